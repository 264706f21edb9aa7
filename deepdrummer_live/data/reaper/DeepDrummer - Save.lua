-- DeepDrummer - Save: writes the loop playing now to the library as .mid and .wav (/dd/save).
-- Needs deepdrummer.lua in the same folder (settings there).
local here = ({reaper.get_action_context()})[2]:match("^(.*[/\\])") or ""
dofile(here .. "deepdrummer.lua").send("/dd/save")
