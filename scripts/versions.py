"""Print the resolved versions of what the service and its tests are most sensitive to, one per line.

Run by .ci/run and scripts/fresh-install-check at the start of a test run, so that a failure caused by a new
release of one of these is named by the run's own output.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = (
    # the model stack
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "sentence-transformers",
    "FlagEmbedding",
    "numpy",
    # the serving stack
    "flask",
    "gunicorn",
    "gevent",
    "pydantic",
    "redis",
    # the clients the compatibility routes are tested with
    "openai",
    "cohere",
    "ollama",
    "huggingface_hub",
    "llama-index-core",
    "llama-index-embeddings-openai",
    "llama-index-embeddings-text-embeddings-inference",
    "langchain-core",
    "langchain-openai",
    "langchain-ollama",
    "selenium",
    "schemathesis",
)


def versions() -> list[tuple[str, str]]:
    found = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, "not installed"))
    return found


def main() -> int:
    found = versions()
    width = max(len(name) for name, _ in found)
    print("resolved versions:")
    for name, version in found:
        print(f"  {name:<{width}}  {version}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
