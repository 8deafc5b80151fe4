"""The boot: init.toml, plugins, the plan, and running a plan on the core with in-order commits."""
