#!/bin/sh
# As the official image: its build turns protected mode off (else Redis refuses every other container when it has
# no password); a later --protected-mode on the command line still wins.
set -e
if [ "$1" = "redis-server" ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
