from azure.data.tables import TableServiceClient


def test_azurite_round_trip(azurite: str) -> None:
    service = TableServiceClient.from_connection_string(azurite)
    table = service.create_table_if_not_exists("fixturecheck")
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 42})
    assert table.get_entity("p", "r")["value"] == 42
