#!/bin/sh
# A 10 MB line in the middle of an otherwise good turn.
echo '{"type":"system","subtype":"init","session_id":"s-fake","model":"fake-model","tools":[],"mcp_servers":[]}'
head -c 10485760 /dev/zero | tr '\000' 'a'
echo
echo '{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":5,"duration_api_ms":1,"num_turns":1,"result":"done","session_id":"s-fake","total_cost_usd":0.0,"usage":{"input_tokens":1,"output_tokens":1},"permission_denials":[]}'
