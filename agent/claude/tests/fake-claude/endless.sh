#!/bin/sh
# Never stops printing text deltas.
echo '{"type":"system","subtype":"init","session_id":"s-fake","model":"fake-model","tools":[],"mcp_servers":[]}'
while true; do echo '{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}}'; done
