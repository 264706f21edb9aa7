-- DeepDrummer - Unlock row 4: lets the generator vary row 4 again (/dd/lock 3 0).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/lock", 3, 0)
