-- DeepDrummer - Unlock row 3: lets the generator vary row 3 again (/dd/lock 2 0).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/lock", 2, 0)
