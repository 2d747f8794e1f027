"""``python -m localredis [--opt-in VAR] -- COMMAND [ARGS...]`` (see the package docstring)."""

import sys

from localredis import run_with_redis

args = sys.argv[1:]
opt_in = "DEMO_REDIS_URL"
if args[:1] == ["--opt-in"] and len(args) > 1:
    opt_in, args = args[1], args[2:]
if args[:1] == ["--"]:
    args = args[1:]
if not args:
    sys.exit("usage: python -m localredis [--opt-in VAR] -- COMMAND [ARGS...]")
sys.exit(run_with_redis(args, opt_in))
