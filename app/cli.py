"""`embedding-service`: the package's command. `bulk` embeds a corpus (app/bulk); more subcommands later."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .bulk.records import FORMATS
from .bulk.sinks import OUTPUT_FORMATS, STORED

BULK_HELP = """Embed a corpus: every record of INPUT (JSONL, CSV, Parquet or plain text, a file or - for stdin)
to OUTPUT (a .parquet file, or a directory of NumPy shards), through running instances (--url, several
allowed) or the engine in this process (--local). Killed at any point, the same command continues where it
stopped; a record the model refuses goes to the rejects file beside OUTPUT with the server's error."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedding-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bulk = commands.add_parser("bulk", help="embed a corpus, resumably", description=BULK_HELP)
    bulk.add_argument("input", help="a .jsonl/.csv/.parquet/.txt file (.gz too), or - for stdin (with --format)")
    bulk.add_argument("output", help="a .parquet file, or a directory for NumPy shards")
    where = bulk.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", action="append", help="a running instance's base URL (repeat for several)")
    where.add_argument("--local", metavar="MODEL_PATH", help="embed in this process with the model at this path")
    bulk.add_argument("--format", choices=FORMATS, help="the input's format (default: by its name)")
    bulk.add_argument("--output-format", choices=OUTPUT_FORMATS, help="default: parquet for *.parquet, else numpy")
    bulk.add_argument("--text-field", default="text", help="the field or column with the text (default: text)")
    bulk.add_argument("--id-field", help="the field or column with each record's id (default: its position)")
    media = bulk.add_mutually_exclusive_group()
    media.add_argument(
        "--images",
        action="store_true",
        help="the text field (or each line) holds an image's (or PDF's) path, relative to INPUT's directory, or URL",
    )
    media.add_argument(
        "--audio",
        action="store_true",
        help="the text field (or each line) holds an audio clip's path, relative to INPUT's directory, or URL",
    )
    bulk.add_argument("--model", help="which served model (default: the server's first)")
    bulk.add_argument("--precision", choices=sorted(STORED), default="float32", help="how vectors are stored")
    bulk.add_argument(
        "--output-type",
        choices=("dense", "sparse", "colbert"),
        default="dense",
        help="sparse: token ids and weights (SPLADE, BGE-M3); colbert: a vector per token (BGE-M3); to Parquet",
    )
    bulk.add_argument("--sparse-top-k", type=int, help="sparse: keep each row's largest weights, this many")
    bulk.add_argument("--prompt-name", help="a prompt from the model's config, by name (e.g. document)")
    bulk.add_argument(
        "--side", choices=("query", "document"), help="asymmetric models: which side the texts are (is_query)"
    )
    bulk.add_argument("--dimensions", type=int, help="Matryoshka: keep the first N dimensions")
    bulk.add_argument("--no-normalize", action="store_true", help="keep vectors as the model makes them")
    bulk.add_argument("--cache", action="store_true", help="let the servers cache these vectors (default: off)")
    bulk.add_argument("--concurrency", type=int, help="requests in flight (default: 2 per server worker)")
    bulk.add_argument("--batch-tokens", type=int, default=8192, help="estimated tokens per request")
    bulk.add_argument("--chunk-size", type=int, default=4096, help="records per resumable chunk")
    bulk.add_argument("--retries", type=int, default=8, help="tries per request on connection errors and 5xx")
    bulk.add_argument("--patience", type=float, default=600.0, help="seconds of 429/503 to wait out per request")
    bulk.add_argument("--restart", action="store_true", help="discard what an earlier run left and begin again")
    bulk.add_argument("--quiet", action="store_true", help="no progress, no summary")
    bulk.add_argument("--json", action="store_true", help="progress and summary as JSON lines on stderr")
    return parser


def bulk(args) -> int:
    from .bulk.embedders import JobFailed, LocalEmbedder, Refused
    from .bulk.job import BulkJob, JobOptions, job_identity, prepare_output
    from .bulk.progress import Progress
    from .bulk.records import InputError, input_format
    from .bulk.remote import RemoteEmbedder
    from .bulk.sinks import make_sink, output_format

    encode = {"normalize": not args.no_normalize, "cache": args.cache}
    if args.prompt_name:
        encode["prompt_name"] = args.prompt_name
    if args.side:
        encode["is_query"] = args.side == "query"
    if args.dimensions:
        encode["dimensions"] = args.dimensions
    if args.sparse_top_k:
        encode["sparse_top_k"] = args.sparse_top_k
    if args.input != "-" and not os.path.isfile(args.input):
        print(f"embedding-service bulk: {args.input}: no such file", file=sys.stderr)
        return 1
    try:
        options = JobOptions(
            input=args.input,
            output=args.output,
            input_format=input_format(args.input, args.format),
            output_format=output_format(args.output, args.output_format),
            text_field=args.text_field,
            id_field=args.id_field,
            precision=args.precision,
            output_type=args.output_type,
            media="image" if args.images else "audio" if args.audio else None,
            chunk_size=args.chunk_size,
            batch_tokens=args.batch_tokens,
            concurrency=args.concurrency,
            encode=encode,
            restart=args.restart,
        )
        media_from = _directory_of(args.input) if options.media else None
        if args.local:
            embedder = LocalEmbedder(args.local, args.precision, encode, args.output_type, options.media, media_from)
        else:
            embedder = RemoteEmbedder(
                args.url,
                args.model,
                args.precision,
                encode,
                args.output_type,
                media=options.media,
                media_from=media_from,
                retries=args.retries,
                patience=args.patience,
            )
        model = embedder.describe()
        meta = {"model": model.name, "model_fingerprint": model.fingerprint, "output_type": args.output_type}
        if options.media:
            meta["images" if options.media == "image" else "audio"] = True
        if args.output_type == "dense":
            meta["precision"] = args.precision
        meta.update({key: value for key, value in encode.items() if key != "cache"})
        sink = make_sink(options.output, options.output_format, meta)
        if prepare_output(options, sink, job_identity(options, model)) == "done":
            if not args.quiet:
                print(f"{options.output} is complete already (--restart to compute it again)", file=sys.stderr)
            return 0
        progress = Progress(quiet=args.quiet, json_lines=True if args.json else None)
        summary = BulkJob(options, embedder, sink, progress).run()
    except (JobFailed, InputError, Refused) as exc:
        print(f"embedding-service bulk: {exc}", file=sys.stderr)
        print("what is done stays done: run the same command again to continue", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped: run the same command again to continue", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary.as_dict()))
    return 0


def _directory_of(path: str) -> str:
    """Where an input's relative image paths start: its own directory (stdin: the current one)."""
    return os.getcwd() if path == "-" else os.path.dirname(os.path.abspath(path))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bulk":
        return bulk(args)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
