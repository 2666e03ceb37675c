// swift-tools-version:5.9
// The Swift binding of libvoicebackend. Needs the library installed where pkg-config finds it
// (scripts/install.sh PREFIX; PKG_CONFIG_PATH=PREFIX/lib/pkgconfig). Not compiled here: see
// README.md.
import PackageDescription

let package = Package(
    name: "VoiceBackend",
    products: [
        .library(name: "VoiceBackend", targets: ["VoiceBackend"]),
    ],
    targets: [
        // The C API: a module map over voicebackend.h, linking -lvoicebackend.
        .systemLibrary(
            name: "CVoiceBackend",
            path: "Sources/CVoiceBackend",
            pkgConfig: "voicebackend"
        ),
        // The Swift wrapper.
        .target(
            name: "VoiceBackend",
            dependencies: ["CVoiceBackend"],
            path: "Sources/VoiceBackend"
        ),
    ]
)
