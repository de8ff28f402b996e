#!/bin/sh
# Starts a turn, then hangs and ignores SIGTERM (its children inherit that).
trap '' TERM
echo '{"type":"system","subtype":"init","session_id":"s-fake","model":"fake-model","tools":[],"mcp_servers":[]}'
while true; do sleep 1; done
