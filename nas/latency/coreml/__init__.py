"""Core ML tables, measured where Core ML runs: convert here, measure on Apple hardware, ingest here.

1. ``nas lut build --device iphone12`` (any OS): every op of the space, plus ``CALIBRATION_ARCHS`` whole archs for
   the end-to-end correction, is traced and converted to an mlprogram package (fp16, iOS 16, the device's compute
   units). ``manifest.json`` lists them. The manifest is rewritten atomically after every package, so a killed
   build resumes with ``--resume`` and converts nothing twice.
2. ``nas lut measure MANIFEST --out TIMINGS --on mac|iphone`` (macOS): times each package with coremltools, on this
   Mac or on a connected iPhone through coremltools' remote-device benchmarker. Timings are written after every
   package; ``--resume`` continues. A timings CSV (``id,median_ms[,p10_ms,p90_ms,n]``) typed in from Xcode's Core ML
   performance report is accepted by step 3 too.
3. ``nas lut ingest MANIFEST TIMINGS --out FILE`` (any OS): a measured table, with the correction fitted on the
   whole-arch timings exactly as ``nas lut build`` does for local devices.

Core ML is one package format of ``nas.latency.remote`` (which holds the manifest, step 1, and the ingest, step
3, for every format). Modules here: ``units`` (compute-unit names, torch-free), ``convert`` (module ->
mlprogram), ``package`` (the format's converter), ``measure`` (step 2, the runner on a Mac or iPhone).
"""
