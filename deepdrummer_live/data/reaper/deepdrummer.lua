-- DeepDrummer Live for REAPER: what every "DeepDrummer - *.lua" action shares.
-- Each action runs `deepdrummer-live send ADDRESS [ARG...]` (one OSC message to the daemon,
-- exit 0 ok / 1 the daemon refused it / 2 no answer) and says so in REAPER's console on failure.
--
-- Settings: edit here, or leave EXE empty to let the search below find the program.
local M = {}
M.EXE = ""             -- full path to deepdrummer-live (e.g. "/home/me/.local/bin/deepdrummer-live")
M.HOST = "127.0.0.1"   -- the daemon's --osc-host
M.PORT = 9000          -- the daemon's --osc-port
M.TIMEOUT_S = 2        -- how long `send` waits for the answer to Like, Dislike, Save (it returns when it comes)
M.ERROR_WAIT_S = 0.3   -- Next, Undo, Lock have no answer: how long `send` listens for a refusal
M.VERBOSE = false      -- true: print the daemon's answer in the console on success too

-- Addresses the daemon answers (contract v1.1); for the others only a refusal (/dd/error) comes,
-- and `send` listens for one until its timeout, which blocks REAPER meanwhile: keep that short.
local ANSWERED = {["/dd/like"] = true, ["/dd/dislike"] = true, ["/dd/save"] = true}

local EXT = "DeepDrummer"  -- REAPER ExtState section: the found path is remembered for this session

local function is_windows()
  return reaper.GetOS():find("Win") ~= nil
end

local function quote(s)
  return '"' .. s .. '"'
end

-- Lines of a command's output, or {} (for the PATH search below).
local function run_lines(cmdline)
  local out = reaper.ExecProcess(cmdline, 5000)
  local lines = {}
  if not out then return lines end
  local code, rest = out:match("^(%-?%d+)\r?\n(.*)$")
  if code ~= "0" then return lines end
  for line in rest:gmatch("[^\r\n]+") do lines[#lines + 1] = line end
  return lines
end

-- Where deepdrummer-live is: the setting, $DEEPDRUMMER_LIVE, the usual install folders
-- (REAPER started from a desktop or the Dock has a short PATH that misses pipx/pip --user),
-- then the login shell's PATH.
function M.find_exe()
  if M.EXE ~= "" then return M.EXE end
  local env = os.getenv("DEEPDRUMMER_LIVE")
  if env and env ~= "" then return env end
  local cached = reaper.GetExtState(EXT, "exe")
  if cached ~= "" and reaper.file_exists(cached) then return cached end
  local candidates = {}
  if is_windows() then
    local profile, appdata = os.getenv("USERPROFILE") or "", os.getenv("APPDATA") or ""
    candidates[#candidates + 1] = profile .. "\\.local\\bin\\deepdrummer-live.exe"   -- pipx
    for _, v in ipairs({"314", "313", "312", "311"}) do
      candidates[#candidates + 1] = appdata .. "\\Python\\Python" .. v .. "\\Scripts\\deepdrummer-live.exe"
      candidates[#candidates + 1] = (os.getenv("LOCALAPPDATA") or "") ..
        "\\Programs\\Python\\Python" .. v .. "\\Scripts\\deepdrummer-live.exe"
    end
  else
    local home = os.getenv("HOME") or ""
    candidates = {home .. "/.local/bin/deepdrummer-live", "/opt/homebrew/bin/deepdrummer-live",
                  "/usr/local/bin/deepdrummer-live", "/usr/bin/deepdrummer-live"}
  end
  for _, path in ipairs(candidates) do
    if reaper.file_exists(path) then
      reaper.SetExtState(EXT, "exe", path, false)
      return path
    end
  end
  local found = is_windows() and run_lines("where deepdrummer-live")
                or run_lines('/bin/sh -lc "command -v deepdrummer-live"')
  if found[1] and reaper.file_exists(found[1]) then
    reaper.SetExtState(EXT, "exe", found[1], false)
    return found[1]
  end
  return nil
end

-- Sends one message; returns true when the daemon took it.
function M.send(address, ...)
  -- A pad bound to this action on a CC also fires on release (value 0): act on the press only.
  local _, _, _, _, mode, _, val = reaper.get_action_context()
  if mode ~= nil and mode >= 0 and val == 0 then return false end
  local exe = M.find_exe()
  if not exe then
    reaper.ShowConsoleMsg("DeepDrummer: deepdrummer-live not found; install it (pipx install deepdrummer-live) "
      .. "or set M.EXE at the top of deepdrummer.lua, or the DEEPDRUMMER_LIVE environment variable\n")
    return false
  end
  local timeout = ANSWERED[address] and M.TIMEOUT_S or M.ERROR_WAIT_S
  local parts = {quote(exe), "send", "--host", M.HOST, "--port", tostring(M.PORT),
                 "--timeout", tostring(timeout), address}
  for _, arg in ipairs({...}) do parts[#parts + 1] = tostring(arg) end
  local cmdline = table.concat(parts, " ")
  local out = reaper.ExecProcess(cmdline, math.floor((timeout + 5) * 1000))
  if not out then
    reaper.ShowConsoleMsg("DeepDrummer: could not run " .. cmdline .. "\n")
    return false
  end
  local code, text = out:match("^(%-?%d+)\r?\n?(.*)$")
  if code == "0" then
    if M.VERBOSE then reaper.ShowConsoleMsg("DeepDrummer: " .. text) end
    return true
  end
  local why = {["1"] = "the daemon refused it", ["2"] = "no answer: is deepdrummer-live run going, on port "
               .. M.PORT .. "?"}
  reaper.ShowConsoleMsg("DeepDrummer: " .. address .. " failed (" .. (why[code] or ("exit " .. tostring(code)))
    .. ")\n" .. (text or "") .. "\n")
  return false
end

return M
