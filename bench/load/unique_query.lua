-- wrk script: every request gets a different URL, so no cache (or cache-key table) can ever
-- answer it. The URL given to wrk is kept and "r=<thread>.<counter>" is appended as the last query
-- parameter. Thread ids keep URLs unique when wrk runs with -t > 1.

local next_thread_id = 0

function setup(thread)
    next_thread_id = next_thread_id + 1
    thread:set("thread_id", next_thread_id)
end

local counter = 0
local base = nil

function request()
    if base == nil then
        local sep = "?"
        if string.find(wrk.path, "?", 1, true) then
            sep = "&"
        end
        base = wrk.path .. sep .. "r=" .. tostring(thread_id or 0) .. "."
    end
    counter = counter + 1
    return wrk.format(nil, base .. counter)
end
