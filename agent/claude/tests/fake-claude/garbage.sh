#!/bin/sh
# Binary garbage and broken JSON in the middle of an otherwise good turn.
echo '{"type":"system","subtype":"init","session_id":"s-fake","model":"fake-model","tools":[],"mcp_servers":[]}'
head -c 4096 /dev/urandom | tr -d '\n'
echo
echo '{"type": "assistant", "message": {'
printf '\377\376\000\n'
echo '{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":5,"duration_api_ms":1,"num_turns":1,"result":"done","session_id":"s-fake","total_cost_usd":0.0,"usage":{"input_tokens":1,"output_tokens":1},"permission_denials":[]}'
