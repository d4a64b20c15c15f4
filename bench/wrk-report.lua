-- wrk script for bench/api.sh: requests the paths in $WRK_PATHS (one per
-- line) in random order with $WRK_AUTH as the Authorization header, and
-- prints one line: requests/s and latency percentiles in ms.
local paths = {}

function init(args)
    for line in io.lines(os.getenv("WRK_PATHS")) do
        paths[#paths + 1] = line
    end
    wrk.headers["Authorization"] = os.getenv("WRK_AUTH")
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
    return wrk.format("GET", paths[math.random(#paths)])
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    io.write(string.format("RESULT %.0f %.2f %.2f %.2f %d %d\n",
        summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
        summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
