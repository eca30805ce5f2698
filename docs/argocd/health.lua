-- Argo CD health of a RouteReflectorTopology, from its conditions (see README, GitOps).
-- A verdict counts only for the spec it judged: every condition carries observedGeneration.
local hs = { status = "Progressing", message = "waiting for the first topology sync" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local found = {}
for _, condition in ipairs(obj.status.conditions) do
  if generation ~= nil and condition.observedGeneration ~= nil
      and condition.observedGeneration < generation then
    hs.message = "waiting for generation " .. tostring(generation) .. " to be synced"
    return hs
  end
  found[condition.type] = condition
end
local ready = found["Ready"]
local function say(status, condition)
  hs.status = status
  hs.message = condition.reason .. ": " .. (condition.message or "")
  return hs
end
if found["Stalled"] ~= nil and found["Stalled"].status == "True" then
  return say("Degraded", found["Stalled"])
end
if found["Reconciling"] ~= nil and found["Reconciling"].status == "True" then
  return say("Progressing", found["Reconciling"])
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  if found["Degraded"] ~= nil and found["Degraded"].status == "True" then
    return say("Degraded", found["Degraded"])
  end
  return say("Healthy", ready)
end
if ready.reason == "Paused" then
  return say("Suspended", ready)
end
return say("Degraded", ready)
