"""bytes -> Desired: what one fleet-repository commit asks for.

Safe YAML (`yamlfile`), JSON Schema checks (`schema`, the only jsonschema
user), the depends_on graph (`depgraph`), the prompt template language
(`template`) and the incremental builder (`builder`). Imports only the
vocabulary (model, durations); no IO beyond the bytes handed in.
"""
