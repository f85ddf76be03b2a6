"""What a job is written with: `@job` (schema, public or not), `Progress`, `once`, errors."""
