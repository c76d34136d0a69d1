-- Argo CD health check for duckherd.io/DataPipeline (the contract: docs/status.md).
-- Deployment health first (has the operator acted on this generation, is anything stuck),
-- then spec.suspend, then data health (DataReady). Runs without Argo CD's open libraries.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function verdict(status, c)
  hs.status = status
  hs.message = (c.reason or "") .. ": " .. (c.message or "")
  return hs
end

local generation = obj.metadata.generation
if obj.status == nil or obj.status.observedGeneration == nil
    or (generation ~= nil and obj.status.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return verdict("Degraded", stalled)
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return verdict("Progressing", reconciling)
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "False" then
  return verdict("Degraded", ready)
end
if ready ~= nil and ready.status ~= "True" then
  return verdict("Progressing", ready)
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no new runs"
  return hs
end

local data = condition("DataReady")
if data == nil then
  hs.status = "Healthy"
  hs.message = "applied; the operator reports no data health"
  return hs
end
if data.status == "True" or data.reason == "AwaitingFirstRun" then
  return verdict("Healthy", data)
end
if data.reason == "FirstRunInProgress" then
  return verdict("Progressing", data)
end
-- RunFailed, ChecksFailed, PublishBlocked, PublishFailed, Stale: held while a new run is in
-- progress, until a run succeeds.
return verdict("Degraded", data)
