-- POST pre-signed bodies in turn. BODIES names a file of lines "<signature>\t<body>".
local bodies = {}
local index = 0

function init(args)
  for line in io.lines(os.getenv("BODIES")) do
    local tab = line:find("\t", 1, true)
    bodies[#bodies + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
  end
  -- spread threads over the list so they do not send the same bodies
  index = math.random(#bodies)
end

function request()
  index = index % #bodies + 1
  local item = bodies[index]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = item[1],
  }, item[2])
end
