"""The synthetic pose-tracking benchmark: real people, real backgrounds, exact ground truth.

``corrtrack data synth`` (``corrtrack.cli.data``) drives ``suite.generate_suite``;
see docs/synth.md. Modules: ``people`` (cut-outs), ``backgrounds`` (empty
scenes), ``motion`` (camera, paths), ``render`` (compositing and visibility),
``scene`` (one sequence), ``gt`` (the files' content), ``events`` (what
happened), ``baseline`` (greedy IoU tracker), ``config`` (knobs, presets).
"""
