"""One real client reading Parquet over HTTP, run as a child process.

    python3 readers.py CLIENT ATTEMPTS [URL ...]

For each URL, queries `sum(amount), count(*)` with CLIENT (duckdb, polars or
pyarrow) and prints one JSON line per attempt: {"url", "attempt", "result":
[sum, count]} or {"url", "attempt", "error"}. An attempt that errors is
retried, up to ATTEMPTS in all, as a person rerunning a failed query would;
one that returns a result is not. A client that cannot be imported or
loaded prints {"fatal": ...} and exits 3; with no URL, that check is all
it does.

A child process per client, so that a client that panics, aborts or hangs
costs its own queries only, and the parent bounds it with a timeout.
Each attempt builds a fresh connection / filesystem: no client cache
carries bytes from one attempt into the next.
"""
import glob
import json
import os
import sys

# Every HTTP request a client makes gives up after this many seconds.
HTTP_TIMEOUT_S = 10


def duckdb_reader():
    import duckdb
    import duckdb_extension_httpfs

    # The wheel ships the extension at extensions/v<duckdb version>/; there is
    # no network for `INSTALL httpfs`, so it is loaded by path, and the
    # version in the path must be duckdb's own.
    root = os.path.dirname(duckdb_extension_httpfs.__file__)
    want = os.path.join(root, "extensions", f"v{duckdb.__version__}", "httpfs.duckdb_extension")
    if not os.path.isfile(want):
        found = glob.glob(os.path.join(root, "extensions", "*", "*.duckdb_extension"))
        raise RuntimeError(f"no httpfs extension for duckdb {duckdb.__version__} at {want}; the wheel has {found}")

    def connect():
        con = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        con.execute(f"LOAD '{want}'")
        con.execute(f"SET http_timeout = {HTTP_TIMEOUT_S}")
        return con

    connect().close()  # the extension loads, or this client is fatal

    def query(url):
        con = connect()
        try:
            row = con.execute(
                "SELECT sum(amount)::BIGINT, count(*)::BIGINT FROM read_parquet(?)", [url]
            ).fetchone()
            return [int(row[0]), int(row[1])]
        finally:
            con.close()

    return query


def polars_reader():
    import polars as pl

    def query(url):
        df = (
            pl.scan_parquet(url, storage_options={"timeout": f"{HTTP_TIMEOUT_S}s"})
            .select(pl.col("amount").sum().alias("s"), pl.len().alias("n"))
            .collect()
        )
        return [int(df["s"][0]), int(df["n"][0])]

    return query


def pyarrow_reader():
    # pyarrow has no HTTP filesystem of its own: a URL is read through
    # fsspec's, which reads by range (HEAD for the size, then blocks).
    import aiohttp
    import fsspec
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def query(url):
        fs = fsspec.filesystem(
            "http",
            skip_instance_cache=True,
            client_kwargs={"timeout": aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)},
        )
        table = pq.read_table(url, filesystem=fs, columns=["amount"])
        return [int(pc.sum(table["amount"]).as_py()), table.num_rows]

    return query


READERS = {"duckdb": duckdb_reader, "polars": polars_reader, "pyarrow": pyarrow_reader}


def emit(line):
    print(json.dumps(line), flush=True)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in READERS:
        sys.exit(f"usage: readers.py {{{','.join(READERS)}}} ATTEMPTS URL...")
    client, attempts, urls = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    try:
        query = READERS[client]()
    except Exception as e:  # noqa: BLE001 - any import or load failure is fatal
        emit({"fatal": f"{type(e).__name__}: {e}"})
        sys.exit(3)
    for url in urls:
        for attempt in range(1, attempts + 1):
            try:
                emit({"url": url, "attempt": attempt, "result": query(url)})
                break
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # noqa: BLE001 - polars' PanicException is a BaseException
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                emit({"url": url, "attempt": attempt, "error": f"{type(e).__name__}: {first[:300]}"})


if __name__ == "__main__":
    main()
