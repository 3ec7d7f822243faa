"""The vocabulary every layer shares: the measures a sensor reports and the alert levels."""

MEASURES = ("temperature", "humidity", "pcv_temperature")
THRESHOLD_LEVELS = ("green", "yellow", "orange", "red")  # green is the normal band and never alerts
ALERT_LEVELS = THRESHOLD_LEVELS[1:]  # lowest to highest
