"""The only code that calls AWS: a session factory, the state reader and the StackSet executor."""
