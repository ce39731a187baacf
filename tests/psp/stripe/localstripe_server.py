"""Run localstripe (a third-party fake Stripe, a test tool) the way the tests need it: bound to
127.0.0.1 only and keeping its state in a file of the caller's choosing, started empty.

localstripe's own entry point listens on every interface (`::`) and reads and writes a fixed
`/tmp/localstripe.pickle` shared by every run on the machine; this launcher serves the same
aiohttp app with `web.run_app(host=...)` and points the store's persistence at `--state`.

    python -m tests.psp.stripe.localstripe_server --port 8420 --state /tmp/x/localstripe.pickle
"""
from __future__ import annotations

import argparse
import pickle

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="the file localstripe keeps its objects in")
    args = parser.parse_args()

    def dump_to_disk(store: resources.Store) -> None:
        with open(args.state, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk
    resources.Store.try_load_from_disk = lambda store: None  # every run starts empty
    web.run_app(server.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
