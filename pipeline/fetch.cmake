# Hugging Face Hub fetching (hwyquant fetch, run ORG/NAME): libcurl client and HF cache layout.
# libcurl and libcrypto are loaded with dlopen when first used (hub_libraries.cc): only their
# headers are needed here.
find_package(CURL REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(Threads REQUIRED)

add_library(hwyquant_fetch STATIC
  ${CMAKE_CURRENT_LIST_DIR}/hf_cache.cc
  ${CMAKE_CURRENT_LIST_DIR}/hf_hub.cc
  ${CMAKE_CURRENT_LIST_DIR}/hub_libraries.cc
)
add_library(hwyquant::fetch ALIAS hwyquant_fetch)
target_include_directories(hwyquant_fetch PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(hwyquant_fetch
  PUBLIC Threads::Threads
  PRIVATE nlohmann_json::nlohmann_json ${CMAKE_DL_LIBS})
target_include_directories(hwyquant_fetch PRIVATE ${CURL_INCLUDE_DIRS} ${OPENSSL_INCLUDE_DIR})
