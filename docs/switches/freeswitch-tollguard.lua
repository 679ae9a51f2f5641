-- tollguard from FreeSWITCH (mod_lua + mod_curl's `curl` API). NOT run against a real
-- FreeSWITCH: it is not in Debian 12's archive. Dialplan:
--   <action application="lua" data="tollguard.lua"/>  before the bridge.
local url = "http://127.0.0.1:8080/v1/authorize"
local key = "tg_replace_me"
local fail_open = false  -- per account: what to do when tollguard does not answer
local api = freeswitch.API()
local account = session:getVariable("accountcode") or ""
local body = string.format('{"account":"%s","caller":"%s","callee":"%s","call_id":"%s"}',
  account, session:getVariable("caller_id_number") or "",
  session:getVariable("destination_number") or "", session:getVariable("uuid"))
-- mod_curl: curl <url> [headers] [json] [get|head|post|put|delete] [connect-timeout n] [timeout n]
local res = api:execute("curl", url .. " append_headers 'Authorization: Bearer " .. key ..
  "' content-type application/json post " .. body .. " connect-timeout 1 timeout 1")
if res == nil or res == "" or not string.find(res, '"decision"') then
  if not fail_open then session:hangup("SERVICE_UNAVAILABLE") end
  return
end
if string.find(res, '"decision":"allow"') then
  local max_s = string.match(res, '"max_duration_s":(%d+)')
  if max_s then session:execute("sched_hangup", "+" .. max_s .. " ALLOTTED_TIMEOUT") end
else
  session:hangup("CALL_REJECTED")
end
