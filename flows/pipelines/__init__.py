"""The Prefect layer: tasks and flows, one module per flow (hourly.py: the chunk both hourly flows
share; raw.py: the tasks both raw flows share).

Prefect reads its settings when it is imported, so this package, the entry point of every flow,
puts Prefect's local defaults into the environment first (flows.settings.apply_prefect_defaults).
"""

from flows.settings import apply_prefect_defaults

apply_prefect_defaults()
