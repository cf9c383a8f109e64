// Where a run's secret comes from and how its traffic is protected (docs/security.md): an
// explicit secret or secret file (API parameters, pccl-master --secret-file) wins over
// PCCL_SECRET, which wins over PCCL_SECRET_FILE; PCCL_ENCRYPT=off keeps authentication and
// integrity but sends bytes in the clear.
#pragma once
#include <optional>
#include <string>

#include "security/crypto.h"
#include "util/status.h"

namespace pccl::security {

inline constexpr size_t kMinSecretBytes = 16;

struct Settings {
    std::optional<Key> runKey;  // none: an open run
    Mode mode = Mode::Encrypt;
    std::string source;         // where the secret came from, for logs ("PCCL_SECRET", "file /x")
    bool enabled() const { return runKey.has_value(); }
};

// encrypt: 0 = PCCL_ENCRYPT if set, else on; 1 = on; 2 = off. A secret shorter than
// kMinSecretBytes, an unreadable secret file, or one that group or others may read, is
// pcclInvalidArgument with the reason.
Status loadSettings(const std::optional<std::string> &secret, const char *secretFile, uint32_t encrypt, Settings *out);
// The secret held by `path` (a trailing newline dropped), refused if group or others may read it.
Status readSecretFile(const std::string &path, std::string *secret);
// Logs once per process, at warn, that a run without a secret is open to anyone who reaches it.
void warnOpenRun(const char *who);

} // namespace pccl::security
