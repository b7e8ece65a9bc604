"""The `bakery` command: variants.yaml → build/, docker-bake.hcl, CI matrix, images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bakery import add as add_workflow
from bakery import build as docker_build
from bakery import lock as locks
from bakery import matrix as ci_matrix
from bakery import node_defs, output, sources, try_local, workflow_check
from bakery.config import Config
from bakery.errors import EXIT_OK, EXIT_USAGE, BakeryError, StaleError, display_name
from bakery.render import render
from bakery.variants import load as load_variants

EPILOG = """\
exit codes:
  0  success
  1  something else failed (e.g. a file could not be written)
  2  command-line usage error
  3  variants.yaml has problems (each printed as FILE:LINE:COL: key.path: what — fix)
  4  generated files are stale (`bakery check`; fix: `bakery render`)
  5  docker, the buildx plugin or the Docker engine is missing (`bakery build`)
  6  a workflow does not fit its variant (`bakery check-workflow`; `bakery check`: workflows/)
  other non-zero from `bakery build`: docker buildx bake's own exit status
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--file",
        type=Path,
        default=None,
        metavar="PATH",
        help="the variants file (default: variants.yaml in --out, else the nearest one at or "
        "above the current folder)",
    )
    common.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="project folder where build/, docker-bake.hcl and README.md live (default: the "
        "folder of --file, else the nearest folder at or above the current one with a "
        "variants.yaml)",
    )
    ap = argparse.ArgumentParser(
        prog="bakery",
        description="Turn variants.yaml into per-variant Dockerfiles, model manifests and a "
        "docker-bake.hcl, and build them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=description,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    command(
        "validate",
        "check variants.yaml and print every problem",
        "Check variants.yaml; print every problem as FILE:LINE:COL: key.path: "
        "what is wrong — how to fix it. Exit 3 when there are any; exit 6 when a recipe's "
        "workflow does not fit its variants (as `bakery render` would).",
    )
    command(
        "render",
        "rewrite build/, docker-bake.hcl and the README variant table",
        "Validate, then wipe and rewrite build/ and docker-bake.hcl and the variant table in "
        "README.md (between the variants:start/end markers). Same input, same bytes.",
    )
    command(
        "check",
        "fail when the generated files are stale",
        "Check every workflow under workflows/ against its variants (exit 6, one line per "
        "problem), then render in memory and compare with the files on disk; exit 4 naming "
        "each stale file and the command that fixes it.",
    )
    m = command(
        "matrix",
        "print the bake targets as JSON for a CI matrix",
        'Print {"bases": [...], "variants": [...]} as JSON; each list works as a GitHub '
        "Actions matrix.include.",
    )
    m.add_argument("--image", help="image repository for the tags (default: from variants.yaml)")
    m.add_argument(
        "--version", default=ci_matrix.DEFAULT_VERSION, help="version part of the pinned tags"
    )
    k = command(
        "lock",
        "pin every package an image's venv gets (lock/<cuda>.txt)",
        "Resolve, with uv, everything each CUDA line's images install — ComfyUI's and every "
        "custom node's requirements, node pip extras, the handler's requirements, torch's own "
        "dependencies — and write lock/<cuda>.txt next to the variants file (torch and the CUDA "
        "wheels it pins come from the line's index). A line whose inputs did not change keeps "
        "its pins. The source trees are fetched at their pins into the user's cache (as "
        f"`bakery sources` does); offline, --sources DIR or ${locks.SOURCES_ENV} names a folder "
        "holding ComfyUI/ and each custom node in a folder named like its repository, each "
        "checked against its pin. Then run `bakery render`.",
    )
    k.add_argument("--sources", type=Path, default=None, metavar="DIR")
    k.add_argument(
        "--check",
        action="store_true",
        help="write nothing: exit 4 when a fresh lock would differ from the committed one",
    )
    a = command(
        "add",
        "add a ComfyUI workflow: its models, its node packs and a variant, pinned",
        "Read WORKFLOW (the editor's format or the API format), look up every model's sha256 "
        "and size (the workflow's own hash, Hugging Face, Civitai) and every node pack's pinned "
        "source (Comfy Registry, GitHub), all at once, and add a model set, a node set (when "
        "the workflow uses packs beyond ComfyUI core) and a variants entry to variants.yaml, "
        "keeping the rest of the file as it is; the workflow is kept as "
        "workflows/SET/workflow.json. Anything unresolved is listed, one line each with how to "
        "finish, and nothing is written. Running it again changes nothing. Then run "
        "`bakery render`.",
    )
    a.add_argument("workflow", type=Path, metavar="WORKFLOW.json")
    a.add_argument("--name", metavar="SET", help="the sets' name (default: from the file name)")
    a.add_argument(
        "--cuda", action="append", metavar="LINE", help="a CUDA line (repeat; default: all)"
    )
    a.add_argument(
        "--offline",
        action="store_true",
        help="no lookups: sha256 (unless the workflow gives it) and size are written as null",
    )
    a.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FILE=URL",
        help="the URL of a model the workflow names (API format: each one; repeat)",
    )
    cw = command(
        "check-workflow",
        "check a workflow against what a variant's image has",
        "Check WORKFLOW (either format) against a variant: every node class in ComfyUI at "
        "the pin or the variant's node set, every model file a loader names in its model set "
        "(or, with --volume, expected on the network volume), required inputs given, links "
        "from existing nodes and outputs of the right type, values within the node's bounds. "
        "One line per problem: node id, class, input, and the fix. Node definitions come from "
        "node_defs/ (`bakery node-defs`) or --object-info (a built image's /object_info).",
    )
    cw.add_argument("workflow", type=Path, metavar="WORKFLOW")
    cw.add_argument("--variant", required=True, metavar="V")
    cw.add_argument("--object-info", metavar="FILE|URL", default=None)
    cw.add_argument(
        "--volume",
        action="store_true",
        help="models missing from the model set are expected on the network volume",
    )
    nd = command(
        "node-defs",
        "keep ComfyUI's node definitions (from /object_info) in node_defs/",
        "Read ComfyUI's /object_info (--image: start ComfyUI in a built image; or a dump: a "
        "file, or the http URL of a running ComfyUI) and write node_defs/comfyui-<version>.json "
        "and one file per node pack of the node sets, trimmed to what check-workflow reads.",
    )
    nd.add_argument("object_info", metavar="FILE|URL", nargs="?", default=None)
    nd.add_argument(
        "--image",
        metavar="IMAGE",
        help="a built image of a variant with every node set: ComfyUI is started in it (CPU, "
        "host network, removed after) with a marker file in each model folder",
    )
    src = command(
        "sources",
        "fetch ComfyUI and every custom node at its pin (what `bakery lock` reads)",
        "Fetch ComfyUI at its pinned tag or commit and every custom node of every node set at "
        "its commit (git init + git fetch --depth 1 + checkout, https only), each into "
        "DEST/<repository name>, and check that each is at its pin. A tree already at its pin "
        f"is kept. DEST defaults to the user's cache ({sources.default_dir()}); "
        f"`{locks.SOURCES_ENV}=DEST bakery lock` then needs no network.",
    )
    src.add_argument("dest", type=Path, nargs="?", default=None, metavar="DEST")
    b = command(
        "build",
        "render, then docker buildx bake (extra arguments pass through)",
        "Validate and render (or with --check: refuse stale files), then run "
        "`docker buildx bake -f docker-bake.hcl [ARGS...]` in --out. Every argument bakery does "
        "not know goes to bake: `bakery build sdxl --set '*.platform=linux/amd64'`, "
        "`bakery build --print`. Put bake's own flags after `--` if they clash with bakery's.",
    )
    b.add_argument(
        "--check",
        action="store_true",
        help="do not render: fail (exit 4) when the committed files are stale, as CI should",
    )
    t = command(
        "try",
        "start ComfyUI on the CPU with the worker's local API, to send examples/ by hand",
        "From a ComfyUI checkout (--comfyui DIR; its Python needs ComfyUI's and the handler's "
        "requirements: --python) or a built image (--image TAG, run on the host network), "
        "start ComfyUI with --cpu and the worker's local API on 127.0.0.1:PORT; then "
        "`curl -s localhost:PORT/runsync -H 'content-type: application/json' "
        "-d @examples/plain.json`.",
    )
    t.add_argument("--comfyui", type=Path, default=None, metavar="DIR")
    t.add_argument("--image", default=None, metavar="TAG")
    t.add_argument(
        "--python",
        default=None,
        metavar="PY",
        help="the Python to run ComfyUI and the worker with (default: this one)",
    )
    t.add_argument("--port", type=int, default=8000, help="the local API's port (default 8000)")
    t.add_argument("--comfy-port", type=int, default=8188, help="ComfyUI's port (default 8188)")
    return ap


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The variants file and the project folder: given, or found from the current folder.

    Never the folder bakery was installed from: an installed `bakery` run in another
    project must act on that project (each command names the file it used).
    """
    if args.out is not None:
        out = Path(args.out)
    elif args.file is not None:
        out = Path(args.file).resolve().parent
    else:
        out = _project_root(Path.cwd())
    return Path(args.file or (out / "variants.yaml")), out


def _project_root(start: Path) -> Path:
    """The nearest folder at or above `start` that holds a variants.yaml."""
    for folder in (start, *start.parents):
        if (folder / "variants.yaml").is_file():
            return folder
    raise BakeryError(
        f"no variants.yaml in {start} or any folder above it — run bakery inside a project, "
        "or pass --file PATH (and --out DIR)"
    )


def _handler_home(out: Path) -> Path:
    """The folder whose handler/ the images get (its requirements are part of the lock):
    the project's own, else the one bakery came with (a render into an empty folder)."""
    return out if (out / "handler").is_dir() else Path(__file__).resolve().parents[2]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _stale_message(problems: list[str], file: Path) -> str:
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    return "\n".join(shown) + (
        f"\ngenerated files are stale — run `bakery render` (they must match "
        f"{display_name(file)}) and commit the result"
    )


def run(argv: list[str]) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if "--" in extra:
        extra.remove("--")
    if extra and args.command != "build":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    file, out = _paths(args)
    config: Config = load_variants(file)
    if args.command == "try":
        return try_local.run(
            args.comfyui, args.image, config.image, args.port, args.comfy_port, args.python
        )
    if args.command == "validate":
        # render refuses a recipe whose workflow does not fit its variants: so does validate
        problems = workflow_check.recipe_problems(config)
        if problems:
            raise workflow_check.WorkflowProblems(None, problems)
        print(
            f"{display_name(file)}: ok — {_count(len(config.variants), 'variant')} on "
            f"{_count(len(config.cuda), 'CUDA line')}"
        )
        return EXIT_OK
    if args.command == "matrix":
        sys.stdout.write(ci_matrix.dumps(ci_matrix.matrix(config, args.image, args.version)))
        return EXIT_OK
    if args.command == "add":
        return _add(args, file)
    if args.command == "check-workflow":
        return _check_workflow(args, config)
    if args.command == "node-defs":
        if (args.image is None) == (args.object_info is None):
            raise BakeryError("bakery node-defs: give FILE|URL or --image IMAGE (one of them)")
        if args.image:
            info, made_from = node_defs.dump_image(args.image), args.image
        else:
            info = workflow_check.read_object_info(args.object_info)
            made_from = args.object_info
        for path in node_defs.write(config, info, made_from):
            print(f"wrote {display_name(path)}")
        return EXIT_OK
    if args.command == "sources":
        dest = args.dest or sources.default_dir()
        trees = sources.fetch(config, dest)
        print(f"{_count(len(trees), 'source tree')} at their pins in {dest}")
        return EXIT_OK
    if args.command == "lock" and args.check:
        problems = locks.differences(config, _handler_home(out), args.sources)
        if problems:
            raise StaleError("\n".join(problems))
        print(f"lock/ matches a fresh lock of {display_name(file)}")
        return EXIT_OK
    if args.command == "lock":
        written = locks.generate(config, _handler_home(out), args.sources)
        for path in written:
            print(f"wrote {display_name(path)}")
        print("now run `bakery render` and commit lock/ and build/")
        return EXIT_OK
    files = render(config)
    if args.command == "check" or (args.command == "build" and args.check):
        if args.command == "check":
            # First: a workflow that does not fit is what render would refuse, so "stale —
            # run bakery render" would send the user the wrong way.
            notes: list[str] = []
            problems = workflow_check.project_problems(config, say=notes.append)
            if problems:
                for note in notes:
                    print(note, file=sys.stderr)
                raise workflow_check.WorkflowProblems(None, problems)
        problems = output.stale(files, out) + locks.stale(config, _handler_home(out))
        if problems:
            raise StaleError(_stale_message(problems, file))
        if args.command == "check":
            for note in notes:
                print(note, file=sys.stderr)
            print(f"generated files match {display_name(file)}")
            return EXIT_OK
    else:
        # A recipe whose workflow does not fit its variants' ComfyUI and models is refused
        # before anything is written (the whole check, add's workflows too: `bakery check`).
        problems = workflow_check.recipe_problems(config)
        if problems:
            raise workflow_check.WorkflowProblems(None, problems)
        changed = output.write(files, out)
        print(
            f"rendered {_count(len(config.variants), 'variant')} from {display_name(file)}: "
            + (f"{_count(len(changed), 'file')} changed" if changed else "nothing changed")
        )
        for rel in changed:
            print(f"  {rel}")
        if changed:
            tops = sorted({rel.split("/", 1)[0] for rel in map(str, changed)})
            name = display_name(file)
            print(f"commit them with {name}: git add {name} {' '.join(tops)}")
        for problem in locks.stale(config, _handler_home(out)):
            print(f"note: {problem}", file=sys.stderr)
        if args.command == "render":
            return EXIT_OK
    print("$ " + " ".join(docker_build.bake_command(out, extra)), flush=True)
    return docker_build.bake(out, extra)


def _add(args: argparse.Namespace, file: Path) -> int:
    given = {}
    for item in args.model:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise BakeryError(f"--model {item}: write FILE=URL (the file name the workflow uses)")
        given[name] = url
    name = add_workflow.slug(args.name or args.workflow.stem)
    changed = add_workflow.add(
        file, args.workflow, args.name, args.cuda, args.offline, given, say=print
    )
    if changed:
        print(
            f"added {args.workflow} to {display_name(file)} as model set {name} "
            f"(workflow kept as {add_workflow.stored_as(name)}); now run `bakery render`, "
            f"then `bakery check-workflow {add_workflow.stored_as(name)} --variant "
            f"{name}-<cuda>`"
        )
    else:
        print(f"{args.workflow} is in {display_name(file)} already: nothing changed")
    return EXIT_OK


def _check_workflow(args: argparse.Namespace, config: Config) -> int:
    variant = next((v for v in config.variants if v.name == args.variant), None)
    if variant is None:
        raise BakeryError(
            f"--variant {args.variant}: no such variant (have: "
            f"{', '.join(v.name for v in config.variants)})"
        )
    problems, notes = workflow_check.check_file(
        config, variant, args.workflow, args.object_info, args.volume
    )
    for note in notes:
        print(f"note: {note}")
    if problems:
        raise workflow_check.WorkflowProblems(args.workflow, problems)
    print(f"{args.workflow}: fits {variant.name}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except BakeryError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
