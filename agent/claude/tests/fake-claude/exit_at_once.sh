#!/bin/sh
# Fails before printing anything.
echo "fatal: cannot start (fake)" >&2
exit 1
