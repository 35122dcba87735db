"""Prints what it is told, then waits. `--partial TEXT` writes TEXT with no newline;
`--env NAME` prints a variable's value; `--lines N --tag T` prints N numbered lines."""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--partial")
parser.add_argument("--env", action="append", default=[])
parser.add_argument("--lines", type=int, default=0)
parser.add_argument("--tag", default="line")
parser.add_argument("--exit", type=int)
args = parser.parse_args()
for name in args.env:
    print(f"{name} is {os.environ.get(name, '')}", flush=True)
out = sys.stdout.buffer
pad = b"x" * 60
for i in range(args.lines):
    out.write(b"%s %08d %s\n" % (args.tag.encode(), i, pad))
out.flush()
if args.partial:
    out.write(args.partial.encode())
    out.flush()
if args.exit is not None:
    sys.exit(args.exit)
while True:
    time.sleep(3600)
