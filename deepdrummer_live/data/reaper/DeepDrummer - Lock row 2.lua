-- DeepDrummer - Lock row 2: keeps row 2 (as listed top to bottom) in the loops that follow (/dd/lock 1 1).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/lock", 1, 1)
