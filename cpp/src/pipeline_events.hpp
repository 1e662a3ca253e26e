// Small readers of a built Lago event's JSON, shared by the pipeline's submit side (pipeline.cpp)
// and its sender thread (pipeline_sender.cpp). Internal to cpp/src.
#pragma once
#include <cstdint>
#include <string>

namespace llmbill::pipeline_detail {

// Unix milliseconds now (wall clock: events and dead letters carry wall time).
std::int64_t now_ms();

// The event's own timestamp ("1786000000.123"), for the oldest-pending age; now when unreadable.
std::int64_t timestamp_of(const std::string& event_json);

// The event's transaction_id, or "" when it has none.
std::string transaction_id_of(const std::string& event_json);

// The event's external_subscription_id (the billed id), or "" when it has none.
std::string subscription_of(const std::string& event_json);

}  // namespace llmbill::pipeline_detail
