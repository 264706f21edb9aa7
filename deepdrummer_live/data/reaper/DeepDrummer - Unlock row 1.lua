-- DeepDrummer - Unlock row 1: lets the generator vary row 1 again (/dd/lock 0 0).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/lock", 0, 0)
