"""The ModelArts API client: auth, requests, discovery, the incremental sync. No storage here."""

DEMO_PROJECT_ID = "0b1f5c8a3e7d4a2b9c6e0f1a2b3c4d5e"
"""The project the built-in simulator serves, and so the default partition of an unconfigured code
location: `dg dev` with no settings shows the demo's project. Here, not in the simulator, so the
runtime never imports the simulator (a dev tool)."""
