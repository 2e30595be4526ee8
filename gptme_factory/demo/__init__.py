"""The offline demo: the whole line in a temporary brain repo (`gptme-factory demo`).

- `sample`: the sample project and its demand; `scripted`: per-role scripted cells on gptme's
  offline `mock/echo` model; `run`: the demo itself, with its live board.
"""
