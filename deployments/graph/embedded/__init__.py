"""The embedded Neo4j-protocol store: ArcadeDB serving Bolt in a child process, and its Serve deployment."""
