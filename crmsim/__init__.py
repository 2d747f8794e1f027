# The vendors simulated here: python -m crmsim NAME (each module exposes SIMULATOR).
VENDORS = ("clio", "pipedrive", "insightly", "bullhorn", "hubspot", "salesforce")
# CRMs with no built-in connector: reached through a template (examples/rest/) or the example
# plugin package (examples/plugin/).
NOT_BUILT_IN = ("capsule", "copper", "acme")
