"""The gptme adapter: the plugin manifest, the `factory` tool, brain-repo wiring, doctor.

- `manifest`: what gptme loads through the `gptme.plugins` entry point (kept light).
- `tools/`: the `factory` ToolSpec and its functions; gptme finds it through
  `[env] TOOL_MODULES` in the brain repo's gptme.toml.
- `wiring`: what `init` installs into a brain repo; `doctor`: checks that wiring.

This package file imports nothing: importing `plugin.wiring` must not load gptme.
"""
