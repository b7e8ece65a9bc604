"""The build time: `bakery`, variants.yaml → images. One flat pipeline:

load → validate → derive → render → write or compare.

variants.py          load: read variants.yaml (bounded), then validate and derive it
  marked_yaml.py     YAML with the line and column of every value
validate.py          every check at once; after it nothing refuses a user's file
  schema.py          the file's shape and wording (JSON Schema)
  checks.py, expand.py, secret_scan.py   names, pins, paths, CUDA lines; variants; tokens
derive.py            the Config: each derived fact computed once (names, CUDA, RunPod)
  config.py          its types; facts.py: runpod_facts.yaml and the CUDA version rule
render.py            the renderers side by side, each `files(config, done)`:
  dockerfiles.py     Dockerfiles, locks, bake file
  flatten.py         standalone Dockerfiles: base and variant in one, for `docker build`
  manifests.py       models.json (handler.manifest's schema)
  runpod.py          runpod.json and fitness.json (handler's fitness schema)
  tables.py          the variant table (README.md)
  hub.py             the RunPod Hub listing .runpod/ (hub_schema.py)
  templating.py      templates/*.j2 and the filters that escape each context
output.py            write the files atomically, or say which are stale
cli.py               the commands; lock.py (`bakery lock`), matrix.py, build.py (bake)
errors.py            what a user is told, and the exit codes
"""
