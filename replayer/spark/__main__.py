"""`python -m replayer.spark PATH... --out DIR` (and spark-submit of this file): the spark command."""

from replayer.commands.spark import spark

if __name__ == "__main__":
    spark()
