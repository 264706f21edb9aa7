-- DeepDrummer - Lock row 3: keeps row 3 (as listed top to bottom) in the loops that follow (/dd/lock 2 1).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/lock", 2, 1)
