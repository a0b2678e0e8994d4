-- Compliance report (GET /v1/buildings/{id}/compliance): the latest services per asset and
-- rule of a building are ranked with a window function partitioned by (asset_id, rule_code)
-- and ordered by recorded_at; this index hands them over in that order, without a sort.
CREATE INDEX session_items_report_idx ON session_items (building_id, asset_id, rule_code, recorded_at);
