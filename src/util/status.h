// Status and Result<T>: how failures travel inside pccl. The code is the public result code
// (pcclResult_t) so the C facade converts in one place; the message is the human reason.
#pragma once
#include <pccl.h>

#include <optional>
#include <string>
#include <utility>

namespace pccl {

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(pcclResult_t code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status okStatus() { return {}; }

    bool ok() const { return code_ == pcclSuccess; }
    pcclResult_t code() const { return code_; }
    const std::string &message() const { return message_; }

private:
    pcclResult_t code_ = pcclSuccess;
    std::string message_;
};

inline Status invalidArgument(std::string m) { return {pcclInvalidArgument, std::move(m)}; }
inline Status invalidUsage(std::string m) { return {pcclInvalidUsage, std::move(m)}; }
inline Status internalError(std::string m) { return {pcclInternalError, std::move(m)}; }

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}
    Result(Status status) : status_(std::move(status)) {}
    bool ok() const { return status_.ok(); }
    const Status &status() const { return status_; }
    T &value() { return *value_; }
    const T &value() const { return *value_; }
    T &operator*() { return *value_; }
    T *operator->() { return &*value_; }

private:
    Status status_;
    std::optional<T> value_;
};

} // namespace pccl

#define PCCL_RETURN_IF_ERROR(expr)                                                                                     \
    do {                                                                                                               \
        ::pccl::Status pccl_status_ = (expr);                                                                          \
        if (!pccl_status_.ok()) return pccl_status_;                                                                   \
    } while (0)
