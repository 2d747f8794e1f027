# The vendors simulated here: python -m crmsim NAME (each module exposes SIMULATOR).
VENDORS = ("clio", "pipedrive", "insightly", "bullhorn", "hubspot", "salesforce")
