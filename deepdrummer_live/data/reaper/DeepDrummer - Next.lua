-- DeepDrummer - Next: skips to the next loop without rating it (/dd/next).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/next")
