"""The example application: start-up of a small document-search service, booted by initgraph.

Each public module here is one plugin of ``init.toml``; the private modules (``_config``,
``_text``, ``_types``) hold what several plugins share. Every plugin keeps its work in plain,
typed functions and its hooks thin, so the work can be tested and timed without a scheduler.
See ``docs/example.md`` for the plugins, their dependencies and how each one publishes.
"""
