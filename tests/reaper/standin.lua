-- A stand-in for REAPER's `reaper` table, for Debian's lua5.4: the part of the ReaScript API the
-- DeepDrummer actions use, doing what REAPER does (ExecProcess really runs the command).
-- Usage: lua5.4 standin.lua ACTION.lua [MODE VAL]   (MODE/VAL as get_action_context gives them
-- for a MIDI CC binding; default -1 -1, a key press)
local script, mode, val = arg[1], tonumber(arg[2] or "-1"), tonumber(arg[3] or "-1")
local ext = {}

reaper = {}

-- REAPER's answer: the exit code, a newline, then what the command printed.
function reaper.ExecProcess(cmdline, timeout_ms)
  io.stderr:write("ExecProcess: " .. cmdline .. "\n")
  local p = io.popen(cmdline .. " 2>&1", "r")
  if not p then return nil end
  local out = p:read("a")
  local _, _, code = p:close()
  return tostring(code) .. "\n" .. out
end

function reaper.ShowConsoleMsg(msg) io.write(msg) end
function reaper.GetOS() return "Other" end  -- what REAPER says on Linux

function reaper.file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

function reaper.GetExtState(section, key) return ext[section .. "/" .. key] or "" end
function reaper.SetExtState(section, key, value, persist) ext[section .. "/" .. key] = value end

function reaper.get_action_context()
  return false, script, 0, 0, mode, 127, val
end

dofile(script)
