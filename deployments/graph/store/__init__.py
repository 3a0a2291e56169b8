"""Graph store access: the Bolt session, the schema, and the Cypher reads and writes the stage runs."""
