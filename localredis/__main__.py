import sys

from localredis import run_with_redis

args = sys.argv[1:]
if args[:1] == ["--"]:
    args = args[1:]
if not args:
    sys.exit("usage: python -m localredis -- COMMAND [ARGS...]")
sys.exit(run_with_redis(args))
