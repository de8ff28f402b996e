#!/bin/sh
# Prints the start of a turn, then dies of a segmentation fault.
echo '{"type":"system","subtype":"init","session_id":"s-fake","model":"fake-model","tools":[],"mcp_servers":[]}'
echo '{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}}'
kill -SEGV $$
