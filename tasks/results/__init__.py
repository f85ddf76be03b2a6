"""Job records in DynamoDB: the state machine (`records`) and Celery's result backend."""
