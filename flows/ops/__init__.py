"""Operator tools, outside the pipelines: the `montrg` CLI, doctor, automations, the demo and the
seeding helpers the demo and the soak share."""
